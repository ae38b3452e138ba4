"""Training, ONNX export and quantisation. Needs the [train] extra (torch); import lazily."""
