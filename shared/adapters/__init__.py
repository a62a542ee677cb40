"""Small adapters over AWS: each turns boto errors into shared.errors and speaks domain types."""
