"""Push notifications (Web Push, FCM, APNs) for users who are not connected."""
