"""CNN Explorer: see what a convolutional neural network does to an image."""
