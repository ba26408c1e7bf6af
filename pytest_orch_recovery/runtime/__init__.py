"""The tmux runtime: real agents in tmux sessions on a private server, and their launch wrapper."""
