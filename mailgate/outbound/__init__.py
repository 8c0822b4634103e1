"""The way out: render notifications, keep them in the outbox, deliver them."""
