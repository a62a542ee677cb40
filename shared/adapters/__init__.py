"""Small adapters over AWS: each turns boto errors into shared.domain.errors and speaks domain types."""
