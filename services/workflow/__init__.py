"""What every workflow shares: a declared state machine, and a recorded, audited history of its steps."""
