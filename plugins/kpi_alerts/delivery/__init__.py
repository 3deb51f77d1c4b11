"""Delivery: the alert e-mail, recipients, mailers (SMTP or outbox) and failure notices."""
