"""reactions"""
