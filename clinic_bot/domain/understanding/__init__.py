"""Understanding what patients type: dates and times, intents, language. Pure functions, no I/O."""
