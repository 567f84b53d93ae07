"""Week 4: the event-sourced card aggregate, its services and the CQRS read model."""
