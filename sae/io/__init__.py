"""File formats: SAELens-compatible export and import (sae.io.saelens)."""
