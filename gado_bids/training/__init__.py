"""Training the synthesis networks: cached pairs, augmentation, the training loop."""
