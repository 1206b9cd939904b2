"""The site directory: where everything is and who answers for it."""

from backend.sites.generator import generate_site_document, write_site_document
from backend.sites.loader import SiteDirectoryInvalid, SiteError, load_site_directory, parse_site_directory
from backend.sites.model import SiteDirectory

__all__ = [
    "SiteDirectory",
    "SiteDirectoryInvalid",
    "SiteError",
    "generate_site_document",
    "load_site_directory",
    "parse_site_directory",
    "write_site_document",
]
