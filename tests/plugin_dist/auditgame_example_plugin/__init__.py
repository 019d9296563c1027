"""An example auditgame plug-in distribution: each class is registered by its entry point
(see pyproject.toml), never by a decorator or an import inside auditgame."""
