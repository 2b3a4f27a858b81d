"""Stream → store: parsing (messages), the batch writer (writer) and the consumer loop (consumer)."""
