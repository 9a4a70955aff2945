"""Remote compute: a MONAI Label server as a place to run and train models."""
