"""Ways in: the Kafka consumer and producer, and the SDK recorder that lands micro-batches."""
