"""The base attribute codec: quantizers, the channel coder and constriction entropy coding."""
