//! EntiDB SQL front (filled by the SQL front issue).
