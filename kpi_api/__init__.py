"""Read API and live page over the KPI tables (API Gateway + Lambda in AWS, ``ecomkpi serve`` locally)."""
