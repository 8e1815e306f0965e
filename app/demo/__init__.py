"""Demo fleet for webug: protobuf blobs, a seeded BMDB, and a simulator that keeps it moving."""
