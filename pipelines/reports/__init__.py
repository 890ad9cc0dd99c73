"""What the commands show users: terminal tables and mileage statements, read from the marts."""
