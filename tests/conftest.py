import jax

# Tests run in float64 (the library itself never flips this flag).
jax.config.update("jax_enable_x64", True)
