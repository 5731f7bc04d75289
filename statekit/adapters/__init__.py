"""Drop-in storage classes for bot frameworks (aiogram, Pyrogram-family clients, Telethon).

Import the submodule you need (``statekit.adapters.aiogram`` …); each needs its framework installed.
"""

__all__: list[str] = []
