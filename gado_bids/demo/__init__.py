"""A demo BIDS dataset simulated from the bundled template: no download, no shared data."""
