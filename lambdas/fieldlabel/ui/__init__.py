"""Worker UI support: the taxonomy as the templates see it, the template build step, review task input and answers."""
