"""Quality measurements that the eval commands print, save and log."""
