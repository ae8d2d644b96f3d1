"""The asset catalog: companies, folders and assets, ingest of files, crops, set rules, local
files."""
