"""The synthesis networks, their weights and the device they run on."""
