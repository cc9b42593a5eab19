"""`anvil run --mode batches`: the jobs go through the Message Batches API at half price."""
