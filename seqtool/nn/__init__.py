"""Neural building blocks shared by every task."""
