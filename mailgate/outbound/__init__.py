"""The way out: render notifications, compose them, hand them to a relay or a maildir."""
