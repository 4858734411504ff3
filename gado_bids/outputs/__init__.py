"""Writing the BIDS Derivatives dataset: names, sidecars, dataset_description, atomic writes."""
