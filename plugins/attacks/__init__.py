"""Built-in attack plugins: model poisoning by the malicious clients (``data.malicious_clients``)."""
