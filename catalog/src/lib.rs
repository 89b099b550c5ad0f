//! EntiDB catalog (filled by the SQL front issue).
