"""The ways mail comes in; each one only hands raw bytes to the spool."""
