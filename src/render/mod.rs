pub mod chart_repo;
