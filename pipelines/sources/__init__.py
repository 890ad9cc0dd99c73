"""Sources: everything that writes into landing (the simulator, the Smartcar puller, the
webhook receiver), each through the one landing writer in `landing_writer`."""
