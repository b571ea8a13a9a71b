"""The Bolt front door's wing: PackStream, the values it carries, and later the server itself."""
