//! Fleet of nodes behind AWS Systems Manager.
