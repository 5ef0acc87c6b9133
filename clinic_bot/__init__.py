"""clinic_bot: a WhatsApp appointment assistant for one clinic, through Whapi.Cloud.

The layers, top to bottom, are packages (see docs/architecture.md); `create_app` lives in
`clinic_bot.app` and the wiring of every reaction in `clinic_bot.bootstrap`.
"""
