"""Assessment protocols that train models: MAD (paper, quick, demo, tiny), language modelling, algorithmic."""
