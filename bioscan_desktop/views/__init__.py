"""One widget per module; widgets show data and emit signals, the main window does the work."""
