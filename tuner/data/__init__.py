"""Training data: files and hub datasets, chat formatting, tokenising, packing, the token cache."""
