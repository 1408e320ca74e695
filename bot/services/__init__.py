"""Domain logic, one module per capability. Plain async functions over pydantic models; no
Telegram here. Each public function is one unit of work (one transaction)."""
