"""Research tools around the library: benchmarks, speed, training, baselines, procedural data.

Neither the library nor the node pack imports them."""
