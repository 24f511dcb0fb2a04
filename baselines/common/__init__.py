"""What every baseline family shares: strict state-dict loading, the one checkpoint-resolution path,
the one shipped-checkpoint format, the KL autoencoder and latent decoders, the text encoders, and the
training plumbing. Nothing here imports a family package."""
