"""Image similarity between synthetic and real non-contrast scans."""
