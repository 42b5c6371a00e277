"""Research tools around the library: benchmarks, speed, training, baselines, procedural data. The node pack never imports them."""
