"""Constitutional AI on the server: constitution, three-turn data build, SFT + DPO on the global adapter."""
