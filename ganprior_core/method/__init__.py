"""The paper's method: the multi-latent model, its losses, the optimisation loop, auto-stop and compilation."""
