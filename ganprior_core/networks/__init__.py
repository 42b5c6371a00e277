"""The generator networks the method runs on."""
