"""SafeCampus: a Telegram bot for the daily safety work of a school or a workplace."""
