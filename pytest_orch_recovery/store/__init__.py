"""Storage: the journal and its readers, atomic writes, and validation of what is read back."""
