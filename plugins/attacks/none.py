"""`none`: no attack; malicious clients (if any) send what they trained."""


class NoAttack:
    pass
